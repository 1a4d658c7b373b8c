#!/bin/sh
# Makes legacy-store.tar.gz: a data directory's store written by Nymote
# before secrets left the history (main at f9aedb2): users alice (git
# write; password changed once) and bob, the generated TLS certificate and
# key in tls/, an address book with a contact, and a branch "side".
# Run from the root of a checkout of that version; kept for the record.
set -eu
D=$(mktemp -d)
go build -o "$D/nymote" ./cmd/nymote
go build -o "$D/contacts" ./apps/contacts
N="$D/nymote"
mkdir "$D/data"
$N store init --data "$D/data"
echo alice-password-1 | $N user add alice --git write --password-stdin --data "$D/data"
echo bob-password-12 | $N user add bob --password-stdin --data "$D/data"
"$D/contacts" --data "$D/data" --http 127.0.0.1:18777 --https 127.0.0.1:0 >"$D/out" 2>&1 &
pid=$!
until grep -q "https listening" "$D/out"; do sleep 0.2; done
echo alice-password-2 | $N user passwd alice --password-stdin --data "$D/data"
curl -s -u alice:alice-password-2 -X MKCOL http://127.0.0.1:18777/alice/work/
printf 'BEGIN:VCARD\r\nVERSION:3.0\r\nUID:card-1\r\nFN:Carol Example\r\nEND:VCARD\r\n' |
	curl -s -u alice:alice-password-2 -X PUT -H 'Content-Type: text/vcard' --data-binary @- \
		http://127.0.0.1:18777/alice/work/card-1.vcf
kill $pid
wait $pid || true
$N store branch create side main~5 --data "$D/data"
tar -C "$D/data" -czf legacy-store.tar.gz store.git
