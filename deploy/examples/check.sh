#!/bin/sh
# Runs both example apps on the local engine with plain docker-compose, as
# the tutorial does, and checks they answer: the Flask counter on :5000
# counts, WordPress's install page on :8000 answers and it installs into its
# database. Needs the images of deploy/images/build.sh and free host ports
# 5000 and 8000. Everything it creates is removed on exit (volumes too).
# Usage: deploy/examples/check.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
compose=${COMPOSE:-docker-compose}
p=rscheck$$

cleanup() {
	(cd "$here/composetest" && $compose -p "${p}ct" down --rmi local -v >/dev/null 2>&1) || true
	(cd "$here/wordpress" && $compose -p "${p}wp" down -v >/dev/null 2>&1) || true
}
trap cleanup EXIT INT TERM

# poll URL WANT: waits up to 60 s for URL's body to contain WANT.
poll() {
	i=0
	until curl -fsSL -m 3 "$1" 2>/dev/null | grep -q "$2"; do
		i=$((i + 1))
		[ "$i" -lt 60 ] || { echo "check.sh: $1 did not answer with '$2' within 60 s" >&2; exit 1; }
		sleep 1
	done
}

(cd "$here/composetest" && $compose -p "${p}ct" up -d --build >/dev/null 2>&1)
poll http://127.0.0.1:5000/ "I have been seen 1 times"
poll http://127.0.0.1:5000/ "I have been seen 2 times"
echo "composetest: ok (hit counter counts)"

(cd "$here/wordpress" && $compose -p "${p}wp" up -d >/dev/null 2>&1)
poll http://127.0.0.1:8000/ "Installation"
curl -fsS -m 60 -X POST 'http://127.0.0.1:8000/wp-admin/install.php?step=2' \
	--data 'weblog_title=check&user_name=admin&admin_password=Check-pa55-word&admin_password2=Check-pa55-word&pw_weak=1&admin_email=admin%40example.com&blog_public=0' |
	grep -q 'Success!' || { echo "check.sh: WordPress did not install into its database" >&2; exit 1; }
echo "wordpress: ok (install page answers; installed into MariaDB)"
