complete -c saslpasswd2 -s f -d 'Database to use, as PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite) or a postgresql://USER@HOST/DB URL (password from PGPASSWORD or ~/.pgpass); default: sasldb_path from the application\'s config file, else /etc/sasldb2' -r -F
complete -c saslpasswd2 -s a -d 'Application name (default saslpasswd): read <appname>.conf from the Cyrus SASL config path (SASL_CONF_PATH, else /etc/sasl2:/etc/sasl:...)' -r
complete -c saslpasswd2 -s u -d 'Realm for a userid without @ (default: the realm Postfix looks up for a bare login: smtpd_sasl_local_domain, else myhostname)' -r
complete -c saslpasswd2 -l group -d 'Group that owns the database when run as root (default: $SASLDB_GROUP, else postfix); the file is always root:GROUP mode 0640' -r
complete -c saslpasswd2 -l scram-iterations -d 'PBKDF2 iterations for SCRAM secrets (default: scram_iteration_counter from the config file, else 4096)' -r
complete -c saslpasswd2 -s v -d 'Print the version and exit'
complete -c saslpasswd2 -s p -d 'Pipe mode: no prompt, the password is one line read from standard input (also the mode whenever standard input is not a terminal)'
complete -c saslpasswd2 -s c -d 'Create the account (accepted for compatibility: an existing user is updated either way); cannot be combined with -d'
complete -c saslpasswd2 -s d -d 'Delete the user: every property of user@realm is removed; nothing is read from standard input'
complete -c saslpasswd2 -s n -d 'No plaintext: store no userPassword (an existing one is removed) but a SCRAM authPassword, so the password itself never reaches the disk'
complete -c saslpasswd2 -s h -d 'Print the usage text and exit with status 1'
complete -c saslpasswd2 -l scram -d 'Also store a SCRAM authPassword, as Cyrus\'s scram_secret_generate does'
complete -c saslpasswd2 -l otp -d 'Also store an OTP secret (cmusaslsecretOTP)'
complete -c saslpasswd2 -l help -d 'Print help and exit'
