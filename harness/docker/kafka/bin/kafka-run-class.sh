#!/bin/sh
# kafka-run-class.sh CLASS [ARGS...]: a Java main class of the Kafka jars in /opt/kafka/libs,
# with the real distribution's variables: KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS,
# KAFKA_OPTS, KAFKA_LOG4J_OPTS. The defaults suit the short-lived command-line tools (the
# healthcheck runs one every 10 s): a small heap, the serial collector and the quick C1
# compiler only, so that a tool starts in seconds on a busy host; the broker sets its own.
set -e
class="$1"
shift
# shellcheck disable=SC2086  # the *_OPTS variables are word lists, as in the real script
exec java ${KAFKA_HEAP_OPTS:--Xmx256M} \
    ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto} \
    ${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.properties} \
    ${KAFKA_OPTS:-} -cp '/opt/kafka/libs/*' "$class" "$@"
