"""Alembic environment of the reference server: run on the connection that Database.upgrade_schema()
hands over (config.attributes["connection"]); the schema is the models' metadata."""
from alembic import context

from p2pvps_server.db import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
