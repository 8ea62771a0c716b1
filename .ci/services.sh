#!/usr/bin/env bash
# Make sure the machine's services that provider tests use are up; start any that is not.
# (Kafka-protocol, S3, GCS and SMTP servers are Python packages the tests start themselves.)
set -uo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # name port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    up "$2" && return 0
    sleep 0.1
  done
  echo "service $1 did not come up on port $2" >&2
  return 1
}

start() {  # name port command...
  local name=$1 port=$2
  shift 2
  if up "$port"; then
    echo "service $name: up on $port"
    return 0
  fi
  echo "service $name: starting"
  "$@" >/dev/null 2>&1 || true
  wait_for "$name" "$port" 60 && echo "service $name: up on $port"
}

status=0
start postgres 5432 bash -c 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start' || status=1
start mariadb 3306 start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || status=1
start redis 6379 redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
  --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || status=1
start rabbitmq 5672 rabbitmq-server -detached || status=1
start nats 4222 start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
  -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || status=1
exit $status
