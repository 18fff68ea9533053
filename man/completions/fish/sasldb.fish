# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_sasldb_global_optspecs
    string join \n f/file= u/realm= a/appname= group= temp-dir= sort-memory= h/help V/version
end

function __fish_sasldb_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_sasldb_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_sasldb_using_subcommand
    set -l cmd (__fish_sasldb_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c sasldb -n "__fish_sasldb_needs_command" -s f -l file -d 'Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never in the URL); default: sasldb_path from the -a application\'s config file, else /etc/sasldb2' -r -F
complete -c sasldb -n "__fish_sasldb_needs_command" -s u -l realm -d 'Realm for user names without @ (default: the realm Postfix looks up for a bare login: smtpd_sasl_local_domain, else myhostname)' -r
complete -c sasldb -n "__fish_sasldb_needs_command" -s a -l appname -d 'Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a)' -r
complete -c sasldb -n "__fish_sasldb_needs_command" -l group -d 'Group owning the database when run as root (default: $SASLDB_GROUP, else postfix)' -r
complete -c sasldb -n "__fish_sasldb_needs_command" -l temp-dir -d 'Directory for the temporary files large imports, listings, exports and realm changes sort through (default: the database\'s directory). They hold secrets: they have no name (or lose it at once), mode 0600, and vanish when the command ends, even if it is killed' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_needs_command" -l sort-memory -d 'Bytes one sort holds in memory before it spills (for tests)' -r
complete -c sasldb -n "__fish_sasldb_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c sasldb -n "__fish_sasldb_needs_command" -s V -l version -d 'Print version'
complete -c sasldb -n "__fish_sasldb_needs_command" -f -a "import" -d 'Import users from a file or standard input, in one transaction'
complete -c sasldb -n "__fish_sasldb_needs_command" -f -a "export" -d 'Export users (names only, or with --with-secrets their secrets) as JSON, CSV, or a Dovecot passwd-file'
complete -c sasldb -n "__fish_sasldb_needs_command" -f -a "list" -d 'List users, one per line with their properties, sorted'
complete -c sasldb -n "__fish_sasldb_needs_command" -f -a "verify" -d 'Check a password; exit 0 if it matches, 1 if not, 2 if there is no such user'
complete -c sasldb -n "__fish_sasldb_needs_command" -f -a "realms" -d 'List the realms with their user counts'
complete -c sasldb -n "__fish_sasldb_needs_command" -f -a "rename-realm" -d 'Move every user of a realm to another realm, atomically'
complete -c sasldb -n "__fish_sasldb_needs_command" -f -a "delete-realm" -d 'Delete every user of a realm, atomically'
complete -c sasldb -n "__fish_sasldb_needs_command" -f -a "convert" -d 'Convert a database to another format (or file), in one transaction'
complete -c sasldb -n "__fish_sasldb_needs_command" -f -a "realm" -d 'Show the default realm and where it comes from'
complete -c sasldb -n "__fish_sasldb_needs_command" -f -a "init" -d 'Create an empty database if there is none (with the ownership policy applied; for PostgreSQL, the sasldb table and its trigger)'
complete -c sasldb -n "__fish_sasldb_needs_command" -f -a "check" -d 'Check the database, its permissions and Postfix\'s view of it (realm, smtpd\'s file, the chroot copy); exit 0 when clean, 1 when problems remain'
complete -c sasldb -n "__fish_sasldb_needs_command" -f -a "sync-chroot" -d 'Refresh the copy of the database inside Postfix\'s chroot, atomically (root:postfix 0640)'
complete -c sasldb -n "__fish_sasldb_needs_command" -f -a "serve" -d 'Serve authentication from the database in the foreground: the Dovecot auth-client protocol (Postfix smtpd_sasl_type = dovecot, Exim) and the saslauthd mux protocol (Cyrus libsasl pwcheck_method: saslauthd); --group names the group to run as with --user'
complete -c sasldb -n "__fish_sasldb_needs_command" -f -a "checkpassword" -d 'The DJB checkpassword interface (Dovecot passdb checkpassword): read login NUL password NUL from descriptor 3, run PROG if it is right; exit 1 if not, 111 on an internal error'
complete -c sasldb -n "__fish_sasldb_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -l mode -d 'What happens to users already in the database' -r -f -a "upsert\t'Add new users and update existing ones; other users stay'
create-only\t'Add new users; existing users are left exactly as they are'
replace-all\t'Make the database hold exactly the input (other users are removed)'"
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -l scram-iterations -d 'PBKDF2 iterations for SCRAM secrets (default: the config\'s scram_iteration_counter, else 4096)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -s f -l file -d 'Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never in the URL); default: sasldb_path from the -a application\'s config file, else /etc/sasldb2' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -s u -l realm -d 'Realm for user names without @ (default: the realm Postfix looks up for a bare login: smtpd_sasl_local_domain, else myhostname)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -s a -l appname -d 'Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -l group -d 'Group owning the database when run as root (default: $SASLDB_GROUP, else postfix)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -l temp-dir -d 'Directory for the temporary files large imports, listings, exports and realm changes sort through (default: the database\'s directory). They hold secrets: they have no name (or lose it at once), mode 0600, and vanish when the command ends, even if it is killed' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -l sort-memory -d 'Bytes one sort holds in memory before it spills (for tests)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -l csv -d 'CSV input with a header naming the columns user, realm, password'
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -l json -d 'JSON input: an array of {"user", "realm", "password"} objects (the shape `sasldb export --json --with-secrets` writes)'
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -l dry-run -d 'Check everything and print the summary, but write nothing'
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -l skip-bad -d 'Import the good entries even when some are rejected (by default nothing is written if any entry is bad)'
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -s n -l hashed-only -d 'Store no plaintext: a SCRAM authPassword instead of userPassword (hashed-only; the plaintext never reaches the disk)'
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -l scram -d 'Also store a SCRAM authPassword next to userPassword'
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -l otp -d 'Also store an OTP secret (cmusaslsecretOTP)'
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -s q -l quiet -d 'No progress bar, no summary'
complete -c sasldb -n "__fish_sasldb_using_subcommand import" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c sasldb -n "__fish_sasldb_using_subcommand export" -l scheme -d 'Password scheme for --dovecot' -r -f -a "sha512-crypt\t'{SHA512-CRYPT}'
sha256-crypt\t'{SHA256-CRYPT}'
argon2id\t'{ARGON2ID}'
plain\t'{PLAIN}: the password itself'"
complete -c sasldb -n "__fish_sasldb_using_subcommand export" -l only-realm -d 'Only this realm' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand export" -s o -l output -d 'Write to this file (created mode 0600) instead of standard output' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand export" -s f -l file -d 'Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never in the URL); default: sasldb_path from the -a application\'s config file, else /etc/sasldb2' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand export" -s u -l realm -d 'Realm for user names without @ (default: the realm Postfix looks up for a bare login: smtpd_sasl_local_domain, else myhostname)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand export" -s a -l appname -d 'Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand export" -l group -d 'Group owning the database when run as root (default: $SASLDB_GROUP, else postfix)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand export" -l temp-dir -d 'Directory for the temporary files large imports, listings, exports and realm changes sort through (default: the database\'s directory). They hold secrets: they have no name (or lose it at once), mode 0600, and vanish when the command ends, even if it is killed' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand export" -l sort-memory -d 'Bytes one sort holds in memory before it spills (for tests)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand export" -l json -d 'JSON (the default): one object per user'
complete -c sasldb -n "__fish_sasldb_using_subcommand export" -l csv -d 'CSV: user,realm,password (with secrets) or user,realm,properties'
complete -c sasldb -n "__fish_sasldb_using_subcommand export" -l dovecot -d 'Dovecot passwd-file lines `user@realm:{SCHEME}hash` (needs --with-secrets)'
complete -c sasldb -n "__fish_sasldb_using_subcommand export" -l with-secrets -d 'Include secrets (passwords, hashes). Without it only names and properties'
complete -c sasldb -n "__fish_sasldb_using_subcommand export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c sasldb -n "__fish_sasldb_using_subcommand list" -l only-realm -d 'Only users of this realm' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand list" -s f -l file -d 'Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never in the URL); default: sasldb_path from the -a application\'s config file, else /etc/sasldb2' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand list" -s u -l realm -d 'Realm for user names without @ (default: the realm Postfix looks up for a bare login: smtpd_sasl_local_domain, else myhostname)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand list" -s a -l appname -d 'Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand list" -l group -d 'Group owning the database when run as root (default: $SASLDB_GROUP, else postfix)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand list" -l temp-dir -d 'Directory for the temporary files large imports, listings, exports and realm changes sort through (default: the database\'s directory). They hold secrets: they have no name (or lose it at once), mode 0600, and vanish when the command ends, even if it is killed' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand list" -l sort-memory -d 'Bytes one sort holds in memory before it spills (for tests)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand list" -l json -d 'JSON output'
complete -c sasldb -n "__fish_sasldb_using_subcommand list" -s h -l help -d 'Print help'
complete -c sasldb -n "__fish_sasldb_using_subcommand verify" -s f -l file -d 'Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never in the URL); default: sasldb_path from the -a application\'s config file, else /etc/sasldb2' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand verify" -s u -l realm -d 'Realm for user names without @ (default: the realm Postfix looks up for a bare login: smtpd_sasl_local_domain, else myhostname)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand verify" -s a -l appname -d 'Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand verify" -l group -d 'Group owning the database when run as root (default: $SASLDB_GROUP, else postfix)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand verify" -l temp-dir -d 'Directory for the temporary files large imports, listings, exports and realm changes sort through (default: the database\'s directory). They hold secrets: they have no name (or lose it at once), mode 0600, and vanish when the command ends, even if it is killed' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand verify" -l sort-memory -d 'Bytes one sort holds in memory before it spills (for tests)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand verify" -s h -l help -d 'Print help'
complete -c sasldb -n "__fish_sasldb_using_subcommand realms" -s f -l file -d 'Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never in the URL); default: sasldb_path from the -a application\'s config file, else /etc/sasldb2' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand realms" -s u -l realm -d 'Realm for user names without @ (default: the realm Postfix looks up for a bare login: smtpd_sasl_local_domain, else myhostname)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand realms" -s a -l appname -d 'Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand realms" -l group -d 'Group owning the database when run as root (default: $SASLDB_GROUP, else postfix)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand realms" -l temp-dir -d 'Directory for the temporary files large imports, listings, exports and realm changes sort through (default: the database\'s directory). They hold secrets: they have no name (or lose it at once), mode 0600, and vanish when the command ends, even if it is killed' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand realms" -l sort-memory -d 'Bytes one sort holds in memory before it spills (for tests)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand realms" -l json -d 'JSON output'
complete -c sasldb -n "__fish_sasldb_using_subcommand realms" -s h -l help -d 'Print help'
complete -c sasldb -n "__fish_sasldb_using_subcommand rename-realm" -s f -l file -d 'Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never in the URL); default: sasldb_path from the -a application\'s config file, else /etc/sasldb2' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand rename-realm" -s u -l realm -d 'Realm for user names without @ (default: the realm Postfix looks up for a bare login: smtpd_sasl_local_domain, else myhostname)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand rename-realm" -s a -l appname -d 'Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand rename-realm" -l group -d 'Group owning the database when run as root (default: $SASLDB_GROUP, else postfix)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand rename-realm" -l temp-dir -d 'Directory for the temporary files large imports, listings, exports and realm changes sort through (default: the database\'s directory). They hold secrets: they have no name (or lose it at once), mode 0600, and vanish when the command ends, even if it is killed' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand rename-realm" -l sort-memory -d 'Bytes one sort holds in memory before it spills (for tests)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand rename-realm" -s h -l help -d 'Print help'
complete -c sasldb -n "__fish_sasldb_using_subcommand delete-realm" -s f -l file -d 'Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never in the URL); default: sasldb_path from the -a application\'s config file, else /etc/sasldb2' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand delete-realm" -s a -l appname -d 'Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand delete-realm" -l group -d 'Group owning the database when run as root (default: $SASLDB_GROUP, else postfix)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand delete-realm" -l temp-dir -d 'Directory for the temporary files large imports, listings, exports and realm changes sort through (default: the database\'s directory). They hold secrets: they have no name (or lose it at once), mode 0600, and vanish when the command ends, even if it is killed' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand delete-realm" -l sort-memory -d 'Bytes one sort holds in memory before it spills (for tests)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand delete-realm" -l yes -d 'Do not ask for confirmation (needed when standard input is not a terminal)'
complete -c sasldb -n "__fish_sasldb_using_subcommand delete-realm" -s h -l help -d 'Print help'
complete -c sasldb -n "__fish_sasldb_using_subcommand convert" -s f -l file -d 'Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never in the URL); default: sasldb_path from the -a application\'s config file, else /etc/sasldb2' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand convert" -s u -l realm -d 'Realm for user names without @ (default: the realm Postfix looks up for a bare login: smtpd_sasl_local_domain, else myhostname)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand convert" -s a -l appname -d 'Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand convert" -l group -d 'Group owning the database when run as root (default: $SASLDB_GROUP, else postfix)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand convert" -l temp-dir -d 'Directory for the temporary files large imports, listings, exports and realm changes sort through (default: the database\'s directory). They hold secrets: they have no name (or lose it at once), mode 0600, and vanish when the command ends, even if it is killed' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand convert" -l sort-memory -d 'Bytes one sort holds in memory before it spills (for tests)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand convert" -l force -d 'Replace a destination that already holds a database'
complete -c sasldb -n "__fish_sasldb_using_subcommand convert" -l skip-malformed -d 'Skip (and report) malformed keys of the source instead of failing'
complete -c sasldb -n "__fish_sasldb_using_subcommand convert" -s h -l help -d 'Print help'
complete -c sasldb -n "__fish_sasldb_using_subcommand realm" -s f -l file -d 'Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never in the URL); default: sasldb_path from the -a application\'s config file, else /etc/sasldb2' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand realm" -s u -l realm -d 'Realm for user names without @ (default: the realm Postfix looks up for a bare login: smtpd_sasl_local_domain, else myhostname)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand realm" -s a -l appname -d 'Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand realm" -l group -d 'Group owning the database when run as root (default: $SASLDB_GROUP, else postfix)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand realm" -l temp-dir -d 'Directory for the temporary files large imports, listings, exports and realm changes sort through (default: the database\'s directory). They hold secrets: they have no name (or lose it at once), mode 0600, and vanish when the command ends, even if it is killed' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand realm" -l sort-memory -d 'Bytes one sort holds in memory before it spills (for tests)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand realm" -s h -l help -d 'Print help'
complete -c sasldb -n "__fish_sasldb_using_subcommand init" -s f -l file -d 'Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never in the URL); default: sasldb_path from the -a application\'s config file, else /etc/sasldb2' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand init" -s u -l realm -d 'Realm for user names without @ (default: the realm Postfix looks up for a bare login: smtpd_sasl_local_domain, else myhostname)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand init" -s a -l appname -d 'Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand init" -l group -d 'Group owning the database when run as root (default: $SASLDB_GROUP, else postfix)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand init" -l temp-dir -d 'Directory for the temporary files large imports, listings, exports and realm changes sort through (default: the database\'s directory). They hold secrets: they have no name (or lose it at once), mode 0600, and vanish when the command ends, even if it is killed' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand init" -l sort-memory -d 'Bytes one sort holds in memory before it spills (for tests)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand init" -s h -l help -d 'Print help'
complete -c sasldb -n "__fish_sasldb_using_subcommand check" -l queue-directory -d 'Postfix\'s queue directory (the smtpd chroot), instead of main.cf\'s queue_directory' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand check" -s f -l file -d 'Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never in the URL); default: sasldb_path from the -a application\'s config file, else /etc/sasldb2' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand check" -s u -l realm -d 'Realm for user names without @ (default: the realm Postfix looks up for a bare login: smtpd_sasl_local_domain, else myhostname)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand check" -s a -l appname -d 'Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand check" -l group -d 'Group owning the database when run as root (default: $SASLDB_GROUP, else postfix)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand check" -l temp-dir -d 'Directory for the temporary files large imports, listings, exports and realm changes sort through (default: the database\'s directory). They hold secrets: they have no name (or lose it at once), mode 0600, and vanish when the command ends, even if it is killed' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand check" -l sort-memory -d 'Bytes one sort holds in memory before it spills (for tests)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand check" -l fix -d 'Repair what is safe to repair: owner, group and mode (root:postfix 0640, never wider), a missing LMDB lock file, a lock file or SQLite journal that is a symbolic or hard link (removed; a lock file made again), leftover temporary files, and the Postfix chroot copy (refreshed as by sync-chroot). User data is never deleted; directories are not changed (the finding says how)'
complete -c sasldb -n "__fish_sasldb_using_subcommand check" -l json -d 'Print the findings as JSON'
complete -c sasldb -n "__fish_sasldb_using_subcommand check" -s h -l help -d 'Print help'
complete -c sasldb -n "__fish_sasldb_using_subcommand sync-chroot" -l queue-directory -d 'Postfix\'s queue directory (the smtpd chroot), instead of main.cf\'s queue_directory' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand sync-chroot" -l to -d 'Write the copy to this path instead of <queue_directory>/<sasldb_path of smtpd.conf>' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand sync-chroot" -s f -l file -d 'Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never in the URL); default: sasldb_path from the -a application\'s config file, else /etc/sasldb2' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand sync-chroot" -s u -l realm -d 'Realm for user names without @ (default: the realm Postfix looks up for a bare login: smtpd_sasl_local_domain, else myhostname)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand sync-chroot" -s a -l appname -d 'Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand sync-chroot" -l group -d 'Group owning the database when run as root (default: $SASLDB_GROUP, else postfix)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand sync-chroot" -l temp-dir -d 'Directory for the temporary files large imports, listings, exports and realm changes sort through (default: the database\'s directory). They hold secrets: they have no name (or lose it at once), mode 0600, and vanish when the command ends, even if it is killed' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand sync-chroot" -l sort-memory -d 'Bytes one sort holds in memory before it spills (for tests)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand sync-chroot" -l force -d 'Replace a copy that holds records the database lacks, or that cannot be read'
complete -c sasldb -n "__fish_sasldb_using_subcommand sync-chroot" -s h -l help -d 'Print help'
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l dovecot -d 'Serve the Dovecot auth-client protocol on this Unix socket (Postfix: smtpd_sasl_type = dovecot, smtpd_sasl_path = private/auth for /var/spool/postfix/private/auth)' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l saslauthd -d 'Serve the saslauthd mux protocol on this Unix socket: the full path, as saslauthd_path names it, /mux included (Cyrus: pwcheck_method: saslauthd)' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l socket-owner -d 'Owner of the socket files (default: the user running the server)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l socket-group -d 'Group of the socket files (default as root: postfix)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l socket-mode -d 'Mode of the socket files, in octal' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l user -d 'Started as root: run as this user once the sockets are bound (the database must be readable by it). --group then names the group to run as (default: the user\'s)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l failure-delay -d 'Seconds a failed authentication waits before it is answered (a timer: other clients are not delayed); 0 for none' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l max-failures -d 'Failures from one remote address (rip=) or for one user after which further requests wait 1 s, 2 s, 4 s... before they are looked at (0: no penalties)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l max-penalty -d 'The longest penalty wait, in seconds' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l max-connections -d 'Connections served at once; more wait in the socket\'s backlog' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l timeout -d 'Seconds allowed for a handshake, the rest of a started request, and a write' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l idle-timeout -d 'Seconds a Dovecot client connection may stay idle' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l threads -d 'Event-loop threads (0: one per CPU)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l mechanisms -d 'Mechanisms to offer on the Dovecot socket, comma-separated (default: every one of PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256 the stored secrets can serve)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l hostname -d 'Host name in CRAM-MD5 challenges (default: the system\'s)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l log-rate -d 'Failure log lines per second (bursts of five times as many are let through)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -s f -l file -d 'Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never in the URL); default: sasldb_path from the -a application\'s config file, else /etc/sasldb2' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -s u -l realm -d 'Realm for user names without @ (default: the realm Postfix looks up for a bare login: smtpd_sasl_local_domain, else myhostname)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -s a -l appname -d 'Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l group -d 'Group owning the database when run as root (default: $SASLDB_GROUP, else postfix)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l temp-dir -d 'Directory for the temporary files large imports, listings, exports and realm changes sort through (default: the database\'s directory). They hold secrets: they have no name (or lose it at once), mode 0600, and vanish when the command ends, even if it is killed' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -l sort-memory -d 'Bytes one sort holds in memory before it spills (for tests)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand serve" -s h -l help -d 'Print help'
complete -c sasldb -n "__fish_sasldb_using_subcommand checkpassword" -s f -l file -d 'Database: PATH, FORMAT:PATH (bdb, lmdb, gdbm, sqlite), or postgresql://[USER@]HOST[:PORT]/DB (password from PGPASSWORD or ~/.pgpass, never in the URL); default: sasldb_path from the -a application\'s config file, else /etc/sasldb2' -r -F
complete -c sasldb -n "__fish_sasldb_using_subcommand checkpassword" -s u -l realm -d 'Realm for user names without @ (default: the realm Postfix looks up for a bare login: smtpd_sasl_local_domain, else myhostname)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand checkpassword" -s a -l appname -d 'Cyrus SASL application name whose <appname>.conf supplies sasldb_path and the SCRAM/OTP settings (searched along SASL_CONF_PATH, like saslpasswd2 -a)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand checkpassword" -l group -d 'Group owning the database when run as root (default: $SASLDB_GROUP, else postfix)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand checkpassword" -l temp-dir -d 'Directory for the temporary files large imports, listings, exports and realm changes sort through (default: the database\'s directory). They hold secrets: they have no name (or lose it at once), mode 0600, and vanish when the command ends, even if it is killed' -r -f -a "(__fish_complete_directories)"
complete -c sasldb -n "__fish_sasldb_using_subcommand checkpassword" -l sort-memory -d 'Bytes one sort holds in memory before it spills (for tests)' -r
complete -c sasldb -n "__fish_sasldb_using_subcommand checkpassword" -s h -l help -d 'Print help'
complete -c sasldb -n "__fish_sasldb_using_subcommand help; and not __fish_seen_subcommand_from import export list verify realms rename-realm delete-realm convert realm init check sync-chroot serve checkpassword help" -f -a "import" -d 'Import users from a file or standard input, in one transaction'
complete -c sasldb -n "__fish_sasldb_using_subcommand help; and not __fish_seen_subcommand_from import export list verify realms rename-realm delete-realm convert realm init check sync-chroot serve checkpassword help" -f -a "export" -d 'Export users (names only, or with --with-secrets their secrets) as JSON, CSV, or a Dovecot passwd-file'
complete -c sasldb -n "__fish_sasldb_using_subcommand help; and not __fish_seen_subcommand_from import export list verify realms rename-realm delete-realm convert realm init check sync-chroot serve checkpassword help" -f -a "list" -d 'List users, one per line with their properties, sorted'
complete -c sasldb -n "__fish_sasldb_using_subcommand help; and not __fish_seen_subcommand_from import export list verify realms rename-realm delete-realm convert realm init check sync-chroot serve checkpassword help" -f -a "verify" -d 'Check a password; exit 0 if it matches, 1 if not, 2 if there is no such user'
complete -c sasldb -n "__fish_sasldb_using_subcommand help; and not __fish_seen_subcommand_from import export list verify realms rename-realm delete-realm convert realm init check sync-chroot serve checkpassword help" -f -a "realms" -d 'List the realms with their user counts'
complete -c sasldb -n "__fish_sasldb_using_subcommand help; and not __fish_seen_subcommand_from import export list verify realms rename-realm delete-realm convert realm init check sync-chroot serve checkpassword help" -f -a "rename-realm" -d 'Move every user of a realm to another realm, atomically'
complete -c sasldb -n "__fish_sasldb_using_subcommand help; and not __fish_seen_subcommand_from import export list verify realms rename-realm delete-realm convert realm init check sync-chroot serve checkpassword help" -f -a "delete-realm" -d 'Delete every user of a realm, atomically'
complete -c sasldb -n "__fish_sasldb_using_subcommand help; and not __fish_seen_subcommand_from import export list verify realms rename-realm delete-realm convert realm init check sync-chroot serve checkpassword help" -f -a "convert" -d 'Convert a database to another format (or file), in one transaction'
complete -c sasldb -n "__fish_sasldb_using_subcommand help; and not __fish_seen_subcommand_from import export list verify realms rename-realm delete-realm convert realm init check sync-chroot serve checkpassword help" -f -a "realm" -d 'Show the default realm and where it comes from'
complete -c sasldb -n "__fish_sasldb_using_subcommand help; and not __fish_seen_subcommand_from import export list verify realms rename-realm delete-realm convert realm init check sync-chroot serve checkpassword help" -f -a "init" -d 'Create an empty database if there is none (with the ownership policy applied; for PostgreSQL, the sasldb table and its trigger)'
complete -c sasldb -n "__fish_sasldb_using_subcommand help; and not __fish_seen_subcommand_from import export list verify realms rename-realm delete-realm convert realm init check sync-chroot serve checkpassword help" -f -a "check" -d 'Check the database, its permissions and Postfix\'s view of it (realm, smtpd\'s file, the chroot copy); exit 0 when clean, 1 when problems remain'
complete -c sasldb -n "__fish_sasldb_using_subcommand help; and not __fish_seen_subcommand_from import export list verify realms rename-realm delete-realm convert realm init check sync-chroot serve checkpassword help" -f -a "sync-chroot" -d 'Refresh the copy of the database inside Postfix\'s chroot, atomically (root:postfix 0640)'
complete -c sasldb -n "__fish_sasldb_using_subcommand help; and not __fish_seen_subcommand_from import export list verify realms rename-realm delete-realm convert realm init check sync-chroot serve checkpassword help" -f -a "serve" -d 'Serve authentication from the database in the foreground: the Dovecot auth-client protocol (Postfix smtpd_sasl_type = dovecot, Exim) and the saslauthd mux protocol (Cyrus libsasl pwcheck_method: saslauthd); --group names the group to run as with --user'
complete -c sasldb -n "__fish_sasldb_using_subcommand help; and not __fish_seen_subcommand_from import export list verify realms rename-realm delete-realm convert realm init check sync-chroot serve checkpassword help" -f -a "checkpassword" -d 'The DJB checkpassword interface (Dovecot passdb checkpassword): read login NUL password NUL from descriptor 3, run PROG if it is right; exit 1 if not, 111 on an internal error'
complete -c sasldb -n "__fish_sasldb_using_subcommand help; and not __fish_seen_subcommand_from import export list verify realms rename-realm delete-realm convert realm init check sync-chroot serve checkpassword help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
