"""Rentals keep the SSH host key the device reported for the lease's renter container.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 08:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made before the migrations whose rentals table create_all() made has the column already.
    if "ssh_host_key" in {column["name"] for column in sa.inspect(op.get_bind()).get_columns("rentals")}:
        return
    with op.batch_alter_table("rentals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ssh_host_key", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rentals", schema=None) as batch_op:
        batch_op.drop_column("ssh_host_key")
