"""Local stand-ins for production services (SeaweedFS as the S3 store), used by the
tests and by `make run-s3`. Not imported by the pipeline itself."""
