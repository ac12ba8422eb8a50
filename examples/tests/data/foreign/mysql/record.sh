#!/bin/sh
# Runs inside `unshare -n` (as root): a private loopback at MTU 1500 with GSO off (so the
# capture holds real MSS-sized segments), our own mariadbd on a data directory made beforehand
# with `mariadb-install-db --no-defaults --datadir=$D/db --user=root`, then the two recorded
# client sessions: $D/cli.pcap and $D/deprecate_eof.pcap (see README.md).
set -eu
D=${D:-/tmp/i16-mysql}
HERE=$(cd "$(dirname "$0")" && pwd)
P=3391
ip link set lo up
ip link set lo mtu 1500
ip link set dev lo gso_max_size 1500 gso_max_segs 1
mariadbd --no-defaults --datadir=$D/db --socket=$D/sock --port=$P --bind-address=127.0.0.1 \
  --skip-grant-tables --skip-ssl --user=root --pid-file=$D/pid --log-error=$D/err.log &
for i in $(seq 50); do [ -S $D/sock ] && break; sleep 0.2; done
M="mariadb --no-defaults --protocol=TCP --skip-ssl -h 127.0.0.1 -P $P -u app"
$M -e "CREATE DATABASE IF NOT EXISTS shop; USE shop;
 CREATE OR REPLACE TABLE shop.t (id INT PRIMARY KEY, name VARCHAR(40), note VARCHAR(120));
 INSERT INTO shop.t SELECT seq, CONCAT('customer-', seq),
   CONCAT('note ', seq, ': ', REPEAT(SUBSTR('abcdefghijklmnopqrstuvwxyz', 1 + seq % 26, 1), 30 + seq * 7 % 50))
   FROM seq_1_to_400;
 CREATE OR REPLACE TABLE shop.u (k INT); INSERT INTO shop.u VALUES (300), (300);"
rec() {
  tcpdump -i lo -U --immediate-mode -w $D/$1.pcap "tcp port $P" 2>$D/$1.tcpdump.log &
  T=$!
  for i in $(seq 50); do grep -q "listening on" $D/$1.tcpdump.log && break; sleep 0.1; done
  shift
  "$@"
  sleep 1.5
  kill $T; wait $T || true
}
rec cli $M shop -e "SELECT COUNT(*) FROM t; SELECT name FROM t WHERE id = 7; SELECT * FROM t; SELECT note FROM t WHERE id = 400; SELECT 'done'" >$D/cli.out
rec deprecate_eof python3 $HERE/client.py 127.0.0.1 $P "SELECT COUNT(*) FROM t" "SELECT * FROM t" \
  "SELECT id, name, (SELECT k FROM u WHERE u.k = t.id) AS dup FROM t" "SELECT 'done'" 2>$D/deprecate_eof.out
mariadb-admin --no-defaults --protocol=TCP -h 127.0.0.1 -P $P -u root shutdown
wait
