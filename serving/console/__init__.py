"""The operator console over the pipeline, served by the API at ``/console``.

See ``docs/console.md``: dashboard, content upload and review (approved uploads become
cold-start candidates, pending and rejected ones are never served), user look-up, and
operators with roles, sessions and CSRF tokens. ``routes.create_console`` builds the app;
``cli.operators_app`` is ``muma console``. Nothing is imported here, so the CLI stays light.
"""
