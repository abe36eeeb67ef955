"""MI classifiers over digitised signals and over segmented images, and their explanations."""
