"""Baseline: the schema of the last version without migrations (times are naive UTC).

Revision ID: 0001
Revises: -
Create Date: 2026-12-02 05:03:11.627404
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=True),
        sa.Column("architecture", sa.String(length=32), nullable=True),
        sa.Column("tunnel_public_key", sa.String(length=4096), nullable=True),
        sa.Column("receipt_public_key", sa.String(length=512), nullable=True),
        sa.Column("remote_port", sa.Integer(), nullable=True),
        sa.Column("web_remote_port", sa.Integer(), nullable=True),
        sa.Column("observed", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("registered_at", sa.DateTime(), nullable=True),
        sa.Column("last_checkin", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("remote_port", name="uq_devices_remote_port"),
        sa.UniqueConstraint("token_hash", name="uq_devices_token_hash"),
        sa.UniqueConstraint("web_remote_port", name="uq_devices_web_remote_port"),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index("ix_devices_architecture", ["architecture"], unique=False)
        batch_op.create_index("ix_devices_last_checkin", ["last_checkin"], unique=False)
        batch_op.create_index("ix_devices_owner", ["owner"], unique=False)

    op.create_table(
        "released_ports",
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "port"),
    )
    with op.batch_alter_table("released_ports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_released_ports_released_at"), ["released_at"], unique=False)

    op.create_table(
        "rentals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=True),
        sa.Column("renter", sa.String(length=32), nullable=False),
        sa.Column("username", sa.String(length=32), nullable=False),
        sa.Column("ssh_authorized_keys", sa.JSON(), nullable=False),
        sa.Column("image", sa.String(length=255), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("cpus", sa.Float(), nullable=False),
        sa.Column("pids", sa.Integer(), nullable=False),
        sa.Column("disk_gb", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("web_hostname", sa.String(length=253), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("web_hostname", name="uq_rentals_web_hostname"),
    )
    with op.batch_alter_table("rentals", schema=None) as batch_op:
        batch_op.create_index("ix_rentals_device_open", ["device_id", "ended_at", "expires_at"], unique=False)
        batch_op.create_index("ix_rentals_expires_at", ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_rentals_renter"), ["renter"], unique=False)
        batch_op.create_index(
            "uq_rentals_one_open_per_device",
            ["device_id"],
            unique=True,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )

    op.create_table(
        "wipe_receipts",
        sa.Column("rental_id", sa.String(length=36), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("receipt", sa.String(length=4096), nullable=False),
        sa.Column("signature", sa.String(length=2048), nullable=False),
        sa.Column("public_key", sa.String(length=512), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["rental_id"], ["rentals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("rental_id"),
    )


def downgrade() -> None:
    op.drop_table("wipe_receipts")
    with op.batch_alter_table("rentals", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_rentals_one_open_per_device",
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_rentals_renter"))
        batch_op.drop_index("ix_rentals_expires_at")
        batch_op.drop_index("ix_rentals_device_open")

    op.drop_table("rentals")
    with op.batch_alter_table("released_ports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_released_ports_released_at"))

    op.drop_table("released_ports")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index("ix_devices_owner")
        batch_op.drop_index("ix_devices_last_checkin")
        batch_op.drop_index("ix_devices_architecture")

    op.drop_table("devices")
