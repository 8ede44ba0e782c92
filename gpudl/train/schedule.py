"""Learning-rate schedules: lr(epoch) for fit's `schedule=`."""
import math


def cosine_schedule(lr, epochs, final_fraction=0.0):
    """lr(epoch) falling from `lr` at epoch 1 along half a cosine to `final_fraction * lr` after the last epoch."""
    def schedule(epoch):
        t = (epoch - 1) / epochs
        return lr * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * t)))
    return schedule
