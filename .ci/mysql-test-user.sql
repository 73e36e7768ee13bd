-- The tests' own MySQL/MariaDB account: it may create, use and drop databases named troupe_* and
-- nothing else. Idempotent; run as an administrator (.ci/run: `mariadb -u root` over the socket).
-- It never changes root or any other account.
CREATE USER IF NOT EXISTS 'troupe_test'@'%' IDENTIFIED BY 'troupe_test';
CREATE USER IF NOT EXISTS 'troupe_test'@'localhost' IDENTIFIED BY 'troupe_test';
GRANT ALL PRIVILEGES ON `troupe\_%`.* TO 'troupe_test'@'%';
GRANT ALL PRIVILEGES ON `troupe\_%`.* TO 'troupe_test'@'localhost';
