#!/bin/bash
# Regenerates the MIT-made fixtures in this directory with MIT krb5's own
# tools (Debian: krb5-user, krb5-kdc, krb5-admin-server):
#   mit.keytab   ktutil: alice@TEST.REALM, kvno 1, etypes 17 18 19 20, and
#                kvno 2 for etype 18; all from password "alice-pw", default salt
#   mit.ccache   kinit alice (preauth, renewable) then kvno of three services;
#                the KDC's krbtgt and service keys come from known passwords so
#                tests can decrypt the tickets:
#                  krbtgt/TEST.REALM            "krbtgt-pw"  etype 18
#                  host/sha1.test.realm         "svc17-pw"   etype 17
#                  host/sha256.test.realm       "svc19-pw"   etype 19
#                  host/sha384.test.realm       "svc20-pw"   etype 20
#   *.klist      what MIT klist says about each, for reference
# A throwaway KDC runs on 127.0.0.1 with its own config under a temp dir.
set -euo pipefail
OUT=$(cd "$(dirname "$0")" && pwd)
D=$(mktemp -d)
PORT=${PORT:-28888}
trap 'if [ -f "$D/kdc.pid" ]; then kill "$(cat "$D/kdc.pid")" 2>/dev/null || true; fi; rm -rf "$D"' EXIT

cat > "$D/krb5.conf" <<CONF
[libdefaults]
    default_realm = TEST.REALM
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    default_tkt_enctypes = aes256-cts-hmac-sha1-96 aes256-cts-hmac-sha384-192 aes128-cts-hmac-sha256-128 aes128-cts-hmac-sha1-96
    default_tgs_enctypes = aes256-cts-hmac-sha384-192 aes128-cts-hmac-sha256-128 aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96
    permitted_enctypes = aes256-cts-hmac-sha384-192 aes128-cts-hmac-sha256-128 aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96
[realms]
    TEST.REALM = {
        kdc = 127.0.0.1:$PORT
    }
CONF
cat > "$D/kdc.conf" <<CONF
[kdcdefaults]
    kdc_listen = 127.0.0.1:$PORT
    kdc_tcp_listen = 127.0.0.1:$PORT
[realms]
    TEST.REALM = {
        database_name = $D/principal
        key_stash_file = $D/stash
        acl_file = $D/kadm5.acl
        master_key_type = aes256-cts-hmac-sha1-96
        supported_enctypes = aes256-cts-hmac-sha384-192:normal aes128-cts-hmac-sha256-128:normal aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
        max_renewable_life = 7d
    }
[logging]
    kdc = FILE:$D/kdc.log
CONF
touch "$D/kadm5.acl"
export KRB5_CONFIG="$D/krb5.conf" KRB5_KDC_PROFILE="$D/kdc.conf"

kdb5_util create -s -P master-pw -r TEST.REALM >/dev/null
kadmin.local -q "addprinc -pw alice-pw +requires_preauth -maxrenewlife 7d alice" >/dev/null
kadmin.local -q "modprinc -maxrenewlife 7d krbtgt/TEST.REALM" >/dev/null
kadmin.local -q "cpw -pw krbtgt-pw -e aes256-cts-hmac-sha1-96:normal krbtgt/TEST.REALM" >/dev/null
kadmin.local -q "addprinc -pw svc17-pw -e aes128-cts-hmac-sha1-96:normal host/sha1.test.realm" >/dev/null
kadmin.local -q "addprinc -pw svc19-pw -e aes128-cts-hmac-sha256-128:normal host/sha256.test.realm" >/dev/null
kadmin.local -q "addprinc -pw svc20-pw -e aes256-cts-hmac-sha384-192:normal host/sha384.test.realm" >/dev/null

krb5kdc -P "$D/kdc.pid"
sleep 1

CC="$D/ccache"
echo alice-pw | kinit -r 2d -c "FILE:$CC" alice@TEST.REALM >/dev/null
for s in host/sha1.test.realm host/sha256.test.realm host/sha384.test.realm; do
    kvno -c "FILE:$CC" "$s@TEST.REALM" >/dev/null
done
cp "$CC" "$OUT/mit.ccache"
klist -e -f -c "FILE:$OUT/mit.ccache" > "$OUT/mit.ccache.klist"

KT="$D/keytab"
{
    for e in aes128-cts-hmac-sha1-96 aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha256-128 aes256-cts-hmac-sha384-192; do
        echo "addent -password -p alice@TEST.REALM -k 1 -e $e"
        echo alice-pw
    done
    echo "addent -password -p alice@TEST.REALM -k 2 -e aes256-cts-hmac-sha1-96"
    echo alice-pw
    echo "wkt $KT"
    echo quit
} | ktutil >/dev/null
cp "$KT" "$OUT/mit.keytab"
klist -k -t -e -K "$OUT/mit.keytab" > "$OUT/mit.keytab.klist"
chmod 0600 "$OUT/mit.keytab" "$OUT/mit.ccache"
echo "fixtures written to $OUT"
