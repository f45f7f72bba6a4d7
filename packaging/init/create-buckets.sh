#!/bin/sh
# The stack's buckets and the application's own MinIO key, limited to those buckets. Safe to
# run again. Needs MINIO_URL, MINIO_ROOT_USER/PASSWORD, S3_ACCESS_KEY/SECRET_KEY and BUCKETS.
set -eu
mc() { command mc --config-dir "${TMPDIR:-/tmp}/mc" "$@"; }

mc alias set stack "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
resources=""
for bucket in $BUCKETS; do
    mc mb --ignore-existing "stack/$bucket"
    resources="$resources\"arn:aws:s3:::$bucket\", \"arn:aws:s3:::$bucket/*\", "
done

policy="${TMPDIR:-/tmp}/classifi-policy.json"
cat >"$policy" <<JSON
{"Version": "2012-10-17",
 "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": [${resources%, }]}]}
JSON
mc admin policy create stack classifi "$policy"
mc admin user add stack "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
# Attaching a policy that is already attached is refused: that refusal means "done".
if ! out=$(mc admin policy attach stack classifi --user "$S3_ACCESS_KEY" 2>&1); then
    case "$out" in
        *"already in effect"*) ;;
        *) echo "$out" >&2; exit 1 ;;
    esac
fi
echo "Buckets $BUCKETS and the application's key are ready on $MINIO_URL."
