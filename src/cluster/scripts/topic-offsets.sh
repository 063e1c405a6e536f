# Print the end offsets of a topic and of its dead-letter topic, and the dead-letter topic's
# earliest offsets when it holds records, with the Kafka tools of the broker's own image:
#   latest TOPIC:PARTITION:OFFSET
#   earliest DLQ_TOPIC:PARTITION:OFFSET
# `iac pipeline status` runs it in a broker pod (exec). Arguments: TOPIC DLQ_TOPIC.
# A topic that does not exist (a dead-letter topic nothing was ever sent to) prints nothing.
set -eu
bin=${KAFKA_BIN:-/opt/kafka/bin}
# The container's KAFKA_HEAP_OPTS sizes the broker's heap; the tool runs next to the broker in
# the same memory limit and needs little.
export KAFKA_HEAP_OPTS="-Xmx64m"
topic=$1 dlq=$2
exact() { printf '^%s$' "$(printf '%s' "$1" | sed 's/[.]/\\./g')"; }
latest=$("$bin/kafka-get-offsets.sh" --bootstrap-server localhost:9092 --topic "($(exact "$topic"))|($(exact "$dlq"))" --time -1)
holds=0
while IFS=: read -r t p o; do
  [ -n "$t" ] || continue
  echo "latest $t:$p:$o"
  if [ "$t" = "$dlq" ] && [ "$o" -gt 0 ]; then holds=1; fi
done <<< "$latest"
if [ "$holds" = 1 ]; then
  "$bin/kafka-get-offsets.sh" --bootstrap-server localhost:9092 --topic "$(exact "$dlq")" --time -2 | sed 's/^/earliest /'
fi
