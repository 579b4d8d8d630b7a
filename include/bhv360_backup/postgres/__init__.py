"""PostgreSQL at both ends: the client tools and catalogs that dump sources and restore targets share."""
