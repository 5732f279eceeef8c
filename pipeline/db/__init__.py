"""Persistence adapter: SQLAlchemy models, engines, Alembic migrations, SQL repositories, audit queries.

Responsible for: everything that touches SQL. This package is the only place that imports SQLAlchemy.
Not responsible for: business rules (pipeline.domain) or deciding what to store (pipeline.service).

Entry points: `Database` (pipeline.db.session), `SqlUnitOfWork` (pipeline.db.uow), `upgrade`/`current`
(pipeline.db.migrate), audit queries (pipeline.db.audit), `DatabaseUnavailable` (pipeline.db.errors).
"""
