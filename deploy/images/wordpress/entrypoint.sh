#!/bin/sh
# Entrypoint of raftswarm-test/wordpress, a stand-in for the official
# wordpress image: writes Debian's WordPress configuration
# (/etc/wordpress/config-default.php, which /usr/share/wordpress/wp-config.php
# loads for any host name) from WORDPRESS_DB_HOST (host[:port], default
# mysql), WORDPRESS_DB_USER, WORDPRESS_DB_PASSWORD, WORDPRESS_DB_NAME and
# WORDPRESS_TABLE_PREFIX (*_FILE variants read from files), then runs
# apache2 in the foreground on port 80.
set -eu

file_env() { # file_env VAR DEFAULT
	eval "val=\${$1:-}; file=\${$1_FILE:-}"
	if [ -n "$file" ]; then
		val=$(cat "$file")
	fi
	[ -n "$val" ] || val=$2
	eval "$1=\$val"
}

# php_quote STRING: STRING as a single-quoted PHP literal.
php_quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g")"; }

if [ "${1:-}" = "apache2-foreground" ]; then
	file_env WORDPRESS_DB_HOST mysql
	file_env WORDPRESS_DB_USER root
	file_env WORDPRESS_DB_PASSWORD ""
	file_env WORDPRESS_DB_NAME wordpress
	file_env WORDPRESS_TABLE_PREFIX wp_
	key() { head -c 48 /dev/urandom | base64 | tr -d '\n'; }
	mkdir -p /etc/wordpress
	{
		echo "<?php"
		echo "// Written by the container's entrypoint from WORDPRESS_DB_*."
		echo "define('DB_NAME', $(php_quote "$WORDPRESS_DB_NAME"));"
		echo "define('DB_USER', $(php_quote "$WORDPRESS_DB_USER"));"
		echo "define('DB_PASSWORD', $(php_quote "$WORDPRESS_DB_PASSWORD"));"
		echo "define('DB_HOST', $(php_quote "$WORDPRESS_DB_HOST"));"
		echo "define('WP_CONTENT_DIR', '/var/lib/wordpress/wp-content');"
		echo "\$table_prefix = $(php_quote "$WORDPRESS_TABLE_PREFIX");"
		for k in AUTH_KEY SECURE_AUTH_KEY LOGGED_IN_KEY NONCE_KEY AUTH_SALT SECURE_AUTH_SALT LOGGED_IN_SALT NONCE_SALT; do
			echo "define('$k', '$(key)');"
		done
	} >/etc/wordpress/config-default.php
	chown root:www-data /etc/wordpress/config-default.php
	chmod 640 /etc/wordpress/config-default.php
	# Apache's environment (user, run and lock dirs) as apache2ctl sets it.
	set +u # envvars reads unset variables
	. /etc/apache2/envvars
	set -u
	mkdir -p "$APACHE_RUN_DIR" "$APACHE_LOCK_DIR" "$APACHE_LOG_DIR"
	rm -f "$APACHE_PID_FILE"
	exec apache2 -DFOREGROUND
fi
exec "$@"
