"""The distill stage's defaults, in one light module: the stage, the CLI and the recipe schema all read them
(importing the stage itself would pull in torch just to print `--help`)."""

# timm's mobilenetv3_small_100 adapted; at 28x28 it has 5.5x fewer MACs than the bundled teacher
# (benchmarks/distill_vs_labels.py --preset fashion-mnist).
STUDENT = "mobilenetv3_small_100"
EPOCHS = 10
# Hinton et al.'s range; T=4 and a 0.9 weight on the soft targets are the usual starting point for CNN students.
TEMPERATURE, ALPHA = 4.0, 0.9
BATCH, LR, WEIGHT_DECAY = 128, 0.05, 5e-4
