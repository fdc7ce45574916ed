"""Human review: sampled queues, rubrics, reviews and inter-rater reliability."""

DEFAULT_QUEUE = "default"
