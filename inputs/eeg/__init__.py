"""EEG P300 selection through BrainFlow."""
