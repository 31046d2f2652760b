"""AWS bootstrap: `irisop cluster create|delete|config` (kops cluster + operator install).

Modules by concern: config (settings, defaults, descriptions), validate
(checks before any AWS call), gateway (the one door to AWS, honest dry-run),
state_bucket / discovery_bucket / network / dns / registry / iam / admin (one
AWS resource kind each), irsa (what the spec asks of kops for the operator's
role, and finding the role kops made), images (publishing the operator's
two images), sample_model (the model bucket's first model), kops (pure
command-line builders and the spec patch), spec_preview (--dry-run's cluster
spec), runner (kops/kubectl processes), plan + steps (ordered, resumable
steps with progress), bootstrap (wiring), cli (argparse). Templates (IAM
policies, ECR lifecycle, EC2 user-data) are package data next to the code.
"""
