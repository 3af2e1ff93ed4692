"""The LR finder's choices and defaults, kept apart from its numerics so that the command line and the
study schema can name them without loading numpy."""

METHODS = ("valley", "steepest", "min10")  # how a curve's suggestion is read (forgetting/lr_curve.py)
DEFAULT_METHOD = "valley"
# The ramp (fastai's defaults): 100 steps from 1e-4 to 10, loss smoothed with 0.98, stopped at 4x the best.
START_LR, END_LR, NUM_STEPS, BETA, DIVERGE_FACTOR = 1e-4, 10.0, 100, 0.98, 4.0
