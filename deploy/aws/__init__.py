"""AWS bootstrap: `irisop cluster create|delete|config` (kops cluster + operator install).

Modules by concern: config (settings, defaults, descriptions), validate
(checks before any AWS call), gateway (the one door to AWS, honest dry-run),
state_bucket / network / dns / registry / iam / admin (one AWS resource kind
each), kops (pure command-line builders), runner (kops/kubectl processes),
plan + steps (ordered, resumable steps with progress), bootstrap (wiring),
cli (argparse). Templates (IAM policies, ECR lifecycle, EC2 user-data) are
package data next to the code.
"""
