"""PostgreSQL: migrations, the connection pool, and the queries each side uses."""
