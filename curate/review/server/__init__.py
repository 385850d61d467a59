"""Files that run inside the argilla-server virtualenv (.venv-argilla), started by path by
`curate.review.serve`; not imported by sftloop itself (they import `argilla_server`)."""
