#!/bin/sh
# Entrypoint of raftswarm-test/mariadb, a stand-in for the official mysql
# image: on the first start with an empty data dir it creates the system
# tables, sets the root password (MYSQL_ROOT_PASSWORD, or
# MYSQL_ALLOW_EMPTY_PASSWORD / MYSQL_RANDOM_ROOT_PASSWORD), the database
# MYSQL_DATABASE and the user MYSQL_USER/MYSQL_PASSWORD with every right on
# it; *_FILE variants (e.g. MYSQL_ROOT_PASSWORD_FILE=/run/secrets/x) are read
# from files. Then it runs mariadbd on 0.0.0.0:3306.
set -eu

# file_env VAR: VAR from $VAR, or from the file named by $VAR_FILE.
file_env() {
	eval "val=\${$1:-}; file=\${$1_FILE:-}"
	if [ -n "$file" ]; then
		[ -z "$val" ] || { echo "entrypoint: both $1 and $1_FILE are set" >&2; exit 1; }
		val=$(cat "$file")
	fi
	eval "$1=\$val"
	export "$1"
}

# sql_quote STRING: STRING as a single-quoted SQL literal.
sql_quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/''/g")"; }

if [ "${1:-}" = "mariadbd" ] || [ "${1:-}" = "mysqld" ]; then
	shift
	datadir=/var/lib/mysql
	mkdir -p "$datadir" /run/mysqld
	chown mysql:mysql "$datadir" /run/mysqld
	if [ ! -d "$datadir/mysql" ]; then
		file_env MYSQL_ROOT_PASSWORD
		file_env MYSQL_PASSWORD
		file_env MYSQL_USER
		file_env MYSQL_DATABASE
		if [ -z "$MYSQL_ROOT_PASSWORD" ] && [ -z "${MYSQL_ALLOW_EMPTY_PASSWORD:-}" ] && [ -z "${MYSQL_RANDOM_ROOT_PASSWORD:-}" ]; then
			echo "entrypoint: database is uninitialized and no root password is given: set MYSQL_ROOT_PASSWORD, MYSQL_ALLOW_EMPTY_PASSWORD or MYSQL_RANDOM_ROOT_PASSWORD" >&2
			exit 1
		fi
		if [ -n "${MYSQL_RANDOM_ROOT_PASSWORD:-}" ]; then
			MYSQL_ROOT_PASSWORD=$(head -c 18 /dev/urandom | base64)
			echo "GENERATED ROOT PASSWORD: $MYSQL_ROOT_PASSWORD"
		fi
		echo "entrypoint: initializing the database in $datadir"
		mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
			--auth-root-authentication-method=normal >/dev/null
		sock=/run/mysqld/init.sock
		mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket="$sock" &
		pid=$!
		i=0
		until mariadb-admin --socket="$sock" ping >/dev/null 2>&1; do
			i=$((i + 1))
			[ "$i" -lt 300 ] || { echo "entrypoint: the temporary server did not start in 30 s" >&2; exit 1; }
			sleep 0.1
		done
		{
			echo "DELETE FROM mysql.global_priv WHERE User='';"
			echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_quote "$MYSQL_ROOT_PASSWORD");"
			echo "CREATE USER 'root'@'%' IDENTIFIED BY $(sql_quote "$MYSQL_ROOT_PASSWORD");"
			echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
			if [ -n "$MYSQL_DATABASE" ]; then
				echo "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
			fi
			if [ -n "$MYSQL_USER" ] && [ -n "$MYSQL_PASSWORD" ]; then
				echo "CREATE USER $(sql_quote "$MYSQL_USER")@'%' IDENTIFIED BY $(sql_quote "$MYSQL_PASSWORD");"
				if [ -n "$MYSQL_DATABASE" ]; then
					echo "GRANT ALL ON \`$MYSQL_DATABASE\`.* TO $(sql_quote "$MYSQL_USER")@'%';"
				fi
			fi
			echo "FLUSH PRIVILEGES;"
		} | mariadb --socket="$sock" -uroot
		mariadb-admin --socket="$sock" -uroot --password="$MYSQL_ROOT_PASSWORD" shutdown
		wait "$pid" || true
		echo "entrypoint: database initialized"
	fi
	exec mariadbd --user=mysql --datadir="$datadir" --bind-address=0.0.0.0 --port=3306 \
		--skip-name-resolve "$@"
fi
exec "$@"
