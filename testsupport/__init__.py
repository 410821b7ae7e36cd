"""What tests/ and bench/ both use: the power simulation of ``compare``, a real ``adk api_server`` with
its scripted agent, CPU hogs. tests/ and bench/ import from here, never from each other (an
import-linter contract); nothing here imports either."""
