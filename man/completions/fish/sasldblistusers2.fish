complete -c sasldblistusers2 -s f -d 'Use the given file as sasldb (FORMAT:PATH forces a format: bdb, lmdb, gdbm, sqlite; a postgresql://USER@HOST/DB URL names a PostgreSQL database)' -r -F
complete -c sasldblistusers2 -s v -d 'Print the version and exit'
complete -c sasldblistusers2 -s h -d 'Print the usage text and exit with status 1'
