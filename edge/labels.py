"""The one FER+ label list, in the order of the vote columns of FER+ label files.

Every model, dataset reader and agent takes its class order from here (through the model
metadata after training), so probabilities index the same emotion everywhere.
"""

# Order of the first eight vote columns in FER+ label.csv / fer2013new.csv.
EMOTIONS = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)

# The two extra vote columns of FER+ files, after the eight emotions.
VOTE_COLUMNS = EMOTIONS + ("unknown", "NF")

NUM_CLASSES = len(EMOTIONS)
NUM_VOTES = len(VOTE_COLUMNS)
