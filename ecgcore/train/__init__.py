"""Training and evaluating the models: trainers, their checkpoints, lead crops, held-out scoring."""
