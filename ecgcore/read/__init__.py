"""Reading a photo: segmentation, grid fit, layout placement, trace digitisation and the limb-lead check."""
