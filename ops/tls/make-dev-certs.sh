#!/usr/bin/env bash
# Makes a development CA and the certificates a Sluice cluster needs to run with TLS and mutual
# TLS on one machine: one server certificate shared by every broker and name server, one client
# certificate per user, and (for the test suite) an expired and an untrusted client certificate.
#
# Development only: the CA key sits unencrypted next to the certificates it signs. Production
# clusters take their certificates from the organisation's own PKI (see ops/tls/README.md).
#
# Keys are EC P-256, not RSA 2048: generating one is a few milliseconds instead of tens to hundreds
# (RSA needs two large primes), which keeps the whole run well under a second, and every TLS stack
# Sluice talks to (Node's OpenSSL, grpc-js, browsers) accepts ECDSA certificates.
#
# Needs only the `openssl` command (3.x, as shipped by Debian).
set -euo pipefail

readonly DEFAULT_DAYS=365
readonly DEFAULT_CLIENTS=(admin alice)
readonly DEFAULT_SANS=("DNS:localhost" "IP:127.0.0.1" "IP:::1")
readonly CA_SUBJECT="/O=Sluice development/CN=Sluice development CA"
readonly UNTRUSTED_CA_SUBJECT="/O=Nobody trusts this/CN=Untrusted development CA"
# The server certificate's CN is informational: clients check the SAN, and servers authenticate
# to each other as `admin` with the admin password, not with this name.
readonly SERVER_SUBJECT="/O=Sluice development/CN=sluice-server"
# A fixed window long past, so expired.crt fails verification as CERT_HAS_EXPIRED on any clock.
readonly EXPIRED_NOT_BEFORE="20200101000000Z"
readonly EXPIRED_NOT_AFTER="20200102000000Z"
# Files of --test-extras; a client may not take one of these names (or ca/server).
readonly RESERVED_NAMES=(ca server expired untrusted untrusted-ca)

program=$(basename "$0")

usage() {
  cat <<EOF
Usage: $program OUT_DIR [--days N] [--client NAME]... [--san DNS:name|IP:address]... [--test-extras] [--force]

Makes a development certificate authority and certificates for Sluice in OUT_DIR:
  ca.crt, ca.key           the development CA (EC P-256)
  server.crt, server.key   for every broker and name server; SAN DNS:localhost, IP:127.0.0.1,
                           IP:::1 and every --san; extended key usage serverAuth and clientAuth
  NAME.crt, NAME.key       one client certificate per --client (CN=NAME, clientAuth);
                           default clients: ${DEFAULT_CLIENTS[*]}

Options:
  --days N          validity of the CA and every certificate, in days (default $DEFAULT_DAYS)
  --client NAME     make a client certificate with CN=NAME; repeat for several. Replaces the
                    default clients, so list admin too if you want it
  --san VALUE       an extra subject alternative name of the server certificate, DNS:name or
                    IP:address; repeat for several
  --test-extras     also make what the test suite needs: expired.crt/.key (CN=alice, valid only
                    in January 2020) and untrusted-ca.crt, untrusted.crt/.key (CN=alice, signed
                    by a second CA that nobody trusts)
  --force           replace existing files, including the CA. Every certificate the old CA signed
                    stops verifying against the new ca.crt
  -h, --help        show this help

Without --force the script refuses to write into OUT_DIR when any of its files is already there,
so running it again never invalidates certificates already handed out. Keys are written mode 0600.

Use them:
  sluice broker --tls-cert OUT_DIR/server.crt --tls-key OUT_DIR/server.key --tls-ca OUT_DIR/ca.crt ...
  sluice --tls-ca OUT_DIR/ca.crt --tls-cert OUT_DIR/alice.crt --tls-key OUT_DIR/alice.key topic list
EOF
}

fail() {
  echo "$program: $*" >&2
  exit 1
}

usage_error() {
  echo "$program: $*" >&2
  echo "Run '$program --help' for usage." >&2
  exit 2
}

contains() {
  local wanted=$1
  shift
  local item
  for item in "$@"; do
    [[ $item == "$wanted" ]] && return 0
  done
  return 1
}

# ---- arguments, validated before anything is written -------------------------------------------

out_dir=""
days=$DEFAULT_DAYS
clients=()
extra_sans=()
test_extras=false
force=false

while (($# > 0)); do
  case $1 in
    -h | --help)
      usage
      exit 0
      ;;
    --days)
      (($# >= 2)) || usage_error "--days needs a number of days"
      days=$2
      shift 2
      ;;
    --client)
      (($# >= 2)) || usage_error "--client needs a name"
      clients+=("$2")
      shift 2
      ;;
    --san)
      (($# >= 2)) || usage_error "--san needs DNS:name or IP:address"
      extra_sans+=("$2")
      shift 2
      ;;
    --test-extras)
      test_extras=true
      shift
      ;;
    --force)
      force=true
      shift
      ;;
    -*)
      usage_error "unknown option $1"
      ;;
    *)
      [[ -z $out_dir ]] || usage_error "one OUT_DIR only (got '$out_dir' and '$1')"
      out_dir=$1
      shift
      ;;
  esac
done

[[ -n $out_dir ]] || usage_error "OUT_DIR is missing"
[[ $days =~ ^[1-9][0-9]{0,4}$ ]] || usage_error "--days must be a whole number of days from 1 to 99999, got '$days'"
((${#clients[@]} > 0)) || clients=("${DEFAULT_CLIENTS[@]}")

for name in "${clients[@]}"; do
  # The name goes into a subject (-subj /CN=...) and a file name: no slashes, no surprises.
  [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] ||
    usage_error "client name '$name' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
  ! contains "$name" "${RESERVED_NAMES[@]}" || usage_error "client name '$name' is taken by one of the script's own files"
done
if [[ $(printf '%s\n' "${clients[@]}" | sort | uniq -d) != "" ]]; then
  usage_error "a client name is given twice: ${clients[*]}"
fi

for san in "${extra_sans[@]}"; do
  # Checked because the value is written into an OpenSSL config line, where ',' would start a new name.
  [[ $san =~ ^DNS:[A-Za-z0-9*]([A-Za-z0-9.-]{0,252})$ || $san =~ ^IP:[0-9A-Fa-f.:]{2,45}$ ]] ||
    usage_error "--san '$san' must be DNS:name or IP:address"
done
sans=("${DEFAULT_SANS[@]}" "${extra_sans[@]}")

command -v openssl >/dev/null || fail "openssl is not installed (Debian: apt-get install openssl)"
[[ $(openssl version) =~ ^OpenSSL\ 3\. ]] || fail "needs OpenSSL 3.x, found: $(openssl version)"

# ---- refuse to replace anything without --force --------------------------------------------------

outputs=(ca.crt ca.key server.crt server.key)
for name in "${clients[@]}"; do outputs+=("$name.crt" "$name.key"); done
if $test_extras; then
  outputs+=(expired.crt expired.key untrusted-ca.crt untrusted.crt untrusted.key)
fi

mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
if ! $force; then
  existing=()
  for file in "${outputs[@]}"; do
    if [[ -e $out_dir/$file ]]; then existing+=("$file"); fi
  done
  if ((${#existing[@]} > 0)); then
    fail "$out_dir already holds ${existing[*]}; nothing was changed.
Replacing the CA would make every certificate it signed stop verifying. To start over anyway,
run again with --force."
  fi
fi

# ---- make everything in a scratch directory, then move it into place -------------------------------
# The scratch directory sits inside OUT_DIR so the final `mv` is a rename on one file system: a
# failure half-way leaves OUT_DIR as it was.

work=$(mktemp -d "$out_dir/.make-dev-certs.XXXXXX")
trap 'rm -rf "$work"' EXIT
umask 077 # keys are born 0600; certificates are opened up to 0644 below

san_line=$(IFS=,; echo "${sans[*]}")
config=$work/openssl.cnf
cat >"$config" <<EOF
# Written by $program; every section the commands below use, so no system openssl.cnf is read.
[ req ]
distinguished_name = subject
[ subject ]

[ ca_ext ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ server_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = $san_line

[ client_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

# A throwaway CA database for 'openssl ca', the only OpenSSL 3.0 command that signs with an
# explicit start date (x509 -req gained -not_before only in 3.4).
[ ca ]
default_ca = throwaway_ca
[ throwaway_ca ]
database = $work/index.txt
new_certs_dir = $work
serial = $work/serial
default_md = sha256
policy = any_subject
unique_subject = no
copy_extensions = none
[ any_subject ]
organizationName = optional
commonName = supplied
EOF

# openssl's chatter goes to a log shown only when it fails, so a good run prints just the summary.
run_openssl() {
  if ! openssl "$@" 2>"$work/openssl.log"; then
    echo "$program: openssl $1 failed:" >&2
    cat "$work/openssl.log" >&2
    exit 1
  fi
}

random_serial() {
  # 16 random bytes with the top bit clear (a positive serial, unique in practice), in hex.
  local hex
  hex=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  printf '%02x%s' $((0x${hex:0:2} & 0x7f)) "${hex:2}"
}

# new_ca FILE_STEM SUBJECT: a self-signed CA certificate and its key.
new_ca() {
  run_openssl req -x509 -new -config "$config" -extensions ca_ext \
    -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -sha256 \
    -keyout "$work/$1.key" -out "$work/$1.crt" -subj "$2" -days "$days" \
    -set_serial "0x$(random_serial)"
}

# new_request FILE_STEM SUBJECT: a key and a certificate signing request for it.
new_request() {
  run_openssl req -new -config "$config" \
    -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
    -keyout "$work/$1.key" -out "$work/$1.csr" -subj "$2"
}

# sign FILE_STEM CA_STEM EXTENSIONS: the certificate for FILE_STEM.csr, valid from now for --days.
sign() {
  run_openssl x509 -req -in "$work/$1.csr" -CA "$work/$2.crt" -CAkey "$work/$2.key" \
    -set_serial "0x$(random_serial)" -days "$days" -sha256 \
    -extfile "$config" -extensions "$3" -out "$work/$1.crt"
}

# sign_in_the_past FILE_STEM CA_STEM: a client certificate whose validity ended long ago.
sign_in_the_past() {
  : >"$work/index.txt"
  random_serial >"$work/serial"
  run_openssl ca -batch -config "$config" -notext -extensions client_ext \
    -cert "$work/$2.crt" -keyfile "$work/$2.key" \
    -startdate "$EXPIRED_NOT_BEFORE" -enddate "$EXPIRED_NOT_AFTER" \
    -in "$work/$1.csr" -out "$work/$1.crt"
}

new_ca ca "$CA_SUBJECT"
new_request server "$SERVER_SUBJECT"
sign server ca server_ext
for name in "${clients[@]}"; do
  new_request "$name" "/O=Sluice development/CN=$name"
  sign "$name" ca client_ext
done
if $test_extras; then
  new_request expired "/O=Sluice development/CN=alice"
  sign_in_the_past expired ca
  new_ca untrusted-ca "$UNTRUSTED_CA_SUBJECT"
  new_request untrusted "/O=Nobody trusts this/CN=alice"
  sign untrusted untrusted-ca client_ext
fi

for file in "${outputs[@]}"; do
  if [[ $file == *.key ]]; then chmod 0600 "$work/$file"; else chmod 0644 "$work/$file"; fi
  mv -f "$work/$file" "$out_dir/$file"
done
# The untrusted CA's key is not an output: nothing should ever sign with it again.

# ---- say what was made and how to use it -------------------------------------------------------------

made() {
  printf '  %-30s %s\n' "$1" "$2"
}
echo "Made in $out_dir (valid $days days; keys are mode 0600):"
made "ca.crt" "development CA: every server and client trusts it (--tls-ca)"
made "ca.key" "the CA's private key: signs certificates, never give it to a process"
made "server.crt, server.key" "every broker and name server; SAN $san_line"
for name in "${clients[@]}"; do
  made "$name.crt, $name.key" "client certificate CN=$name (mTLS principal User:$name)"
done
if $test_extras; then
  made "expired.crt, expired.key" "CN=alice, signed by the CA, valid only $EXPIRED_NOT_BEFORE to $EXPIRED_NOT_AFTER (tests)"
  made "untrusted-ca.crt" "a second CA that no Sluice server trusts (tests)"
  made "untrusted.crt, untrusted.key" "CN=alice, signed by untrusted-ca (tests)"
fi
cat <<EOF

Servers (TLS, and client certificates verified against ca.crt):
  sluice nameserver --tls-cert $out_dir/server.crt --tls-key $out_dir/server.key --tls-ca $out_dir/ca.crt ...
  sluice broker     --tls-cert $out_dir/server.crt --tls-key $out_dir/server.key --tls-ca $out_dir/ca.crt ...
Clients trust the servers through ca.crt (or export SLUICE_TLS_CA=$out_dir/ca.crt):
  sluice --tls-ca $out_dir/ca.crt --user NAME --password-file FILE topic list
  sluice --tls-ca $out_dir/ca.crt --tls-cert $out_dir/${clients[0]}.crt --tls-key $out_dir/${clients[0]}.key topic list
  SDK: new Sluice({ tls: { ca, cert, key } }) with the files' contents
Development only: production clusters take certificates from your own PKI (ops/tls/README.md).
EOF
