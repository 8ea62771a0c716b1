"""PostgreSQL and MySQL/MariaDB databases for ductwork."""
