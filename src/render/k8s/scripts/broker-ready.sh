# Readiness of a Kafka broker: it answers a real request. Sends ApiVersions v0 to the broker's
# own listener and checks the reply: correlation id 1, error code 0, a non-empty list of APIs.
# A TCP connect alone proves little: the broker binds its listener before it has caught up with
# the metadata log, and serves requests only after. No JVM: bash's /dev/tcp, head and od.
#
# Request (clients/src/main/resources/common/message/ApiVersionsRequest.json, RequestHeader.json,
# apache/kafka): INT32 size 19 | INT16 api_key 18 | INT16 api_version 0 | INT32 correlation_id 1
# | STRING client_id "iac-ready" (INT16 length 9). ApiVersionsResponse v0: INT32 size | INT32
# correlation_id | INT16 error_code | INT32 number of api keys | ...
# Inputs (environment): PORT (default 9092).
set -eu
exec 3<>"/dev/tcp/127.0.0.1/${PORT:-9092}"
printf '\000\000\000\023\000\022\000\000\000\000\000\001\000\011iac-ready' >&3
reply=$(head -c 14 <&3 | od -An -tx1 | tr -d ' \n')
exec 3<&-
if [ "${#reply}" -ne 28 ]; then
  echo "short reply from the broker: '$reply'" >&2
  exit 1
fi
correlation=${reply:8:8} error=${reply:16:4} apis=${reply:20:8}
if [ "$correlation" != 00000001 ] || [ "$error" != 0000 ] || [ "$apis" = 00000000 ]; then
  echo "unexpected ApiVersions reply: correlation $correlation, error $error, api keys $apis" >&2
  exit 1
fi
