# Create the topic and write demo messages as JsonConverter envelopes ({"schema", "payload"}),
# the form the JDBC sink needs to know the columns.
# Inputs (environment): BOOTSTRAP, TOPIC, PARTITIONS, REPLICATION_FACTOR, MESSAGES, and
# KAFKA_BIN (the Kafka scripts, /opt/kafka/bin in the image).
set -eu
bin=${KAFKA_BIN:-/opt/kafka/bin}

echo "waiting for Kafka at $BOOTSTRAP"
until "$bin/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --list >/dev/null 2>&1; do
  sleep 5
done
"$bin/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
  --topic "$TOPIC" --partitions "$PARTITIONS" --replication-factor "$REPLICATION_FACTOR"

schema='{"type":"struct","name":"demo_message","optional":false,"fields":[{"field":"id","type":"int32","optional":false},{"field":"message","type":"string","optional":false},{"field":"created_at","type":"int64","optional":false,"name":"org.apache.kafka.connect.data.Timestamp","version":1}]}'
run=$(date +%s)
i=1
while [ "$i" -le "$MESSAGES" ]; do
  now_ms=$(($(date +%s) * 1000))
  printf '{"schema":%s,"payload":{"id":%d,"message":"demo message %d of run %s","created_at":%d}}\n' \
    "$schema" "$i" "$i" "$run" "$now_ms"
  i=$((i + 1))
done | "$bin/kafka-console-producer.sh" --bootstrap-server "$BOOTSTRAP" --topic "$TOPIC" \
  --producer-property acks=all
echo "wrote $MESSAGES messages to $TOPIC"
