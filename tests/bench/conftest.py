from tests.pipeline.conftest import bucket_src, date_src, format_src  # noqa: F401 - shared small lakes
