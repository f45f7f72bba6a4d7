"""The learning loop: submissions, review, duplicates, the retrain policy and its gate,
model administration, crash-safe moves and the consistency doctor."""
