# Register the JDBC sink idempotently: PUT /connectors/NAME/config creates or updates it.
# Inputs (environment): CONNECT_URL, CONNECTOR, CONNECTOR_CLASS, CONFIG_FILE.
set -eu

echo "waiting for Kafka Connect at $CONNECT_URL"
until curl -fsS -o /dev/null "$CONNECT_URL/connectors"; do
  sleep 5
done

# A missing plugin would otherwise surface only as a failed PUT with a long stack trace.
if ! curl -fsS "$CONNECT_URL/connector-plugins" | grep -q "\"$CONNECTOR_CLASS\""; then
  echo "Kafka Connect has no plugin $CONNECTOR_CLASS: pipeline.connect.image must carry it" >&2
  exit 1
fi

# 409 means the workers are rebalancing; 5xx that the worker is not ready yet. Both pass.
attempt=0
while :; do
  attempt=$((attempt + 1))
  code=$(curl -sS -o /tmp/response -w '%{http_code}' -X PUT \
    -H 'Content-Type: application/json' --data-binary "@$CONFIG_FILE" \
    "$CONNECT_URL/connectors/$CONNECTOR/config") || code=000
  case "$code" in
    200|201) echo "connector $CONNECTOR configured (HTTP $code)"; break ;;
    409|5*|000)
      if [ "$attempt" -ge 60 ]; then
        echo "giving up after $attempt attempts (HTTP $code)" >&2
        cat /tmp/response >&2 || true
        exit 1
      fi
      echo "HTTP $code, retrying in 5s"
      sleep 5 ;;
    *)
      echo "Kafka Connect refused the configuration (HTTP $code):" >&2
      cat /tmp/response >&2
      exit 1 ;;
  esac
done

# Done when the connector and at least one task run; a FAILED state ends the Job with its trace.
for _ in $(seq 1 60); do
  status=$(curl -fsS "$CONNECT_URL/connectors/$CONNECTOR/status" || true)
  if printf '%s' "$status" | grep -q '"state":"FAILED"'; then
    echo "connector $CONNECTOR failed: $status" >&2
    exit 1
  fi
  running=$(printf '%s' "$status" | grep -o '"state":"RUNNING"' | wc -l)
  if [ "$running" -ge 2 ]; then
    echo "connector $CONNECTOR is running"
    exit 0
  fi
  sleep 5
done
echo "connector $CONNECTOR did not reach RUNNING: $status" >&2
exit 1
