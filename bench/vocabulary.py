"""One word per idea: the values the spec, the engine, the reports and the command line share
(light at import, so the parser offers them as choices without loading the spec)."""

PRECISIONS = ("fp32", "tf32", "bf16")  # the training arithmetic; losses stay float32
TEACHER_CACHES = ("none", "float16", "float32")  # the exact teacher-logit cache's dtype, or none
METRICS = ("last", "best", "best_val")  # which test top-1 of a run is its number
# where a teacher comes from: trained here with CE, or the authors' released weights (a user's
# own file is a third kind, `file`, named by its path rather than chosen)
TEACHER_SOURCES = ("trained", "published")
