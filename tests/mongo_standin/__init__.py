"""A MongoDB wire-protocol stand-in for the tests: no MongoDB server can be installed here.

``async with MongoStandIn() as mongo:`` serves on ``mongo.url``; see :mod:`tests.mongo_standin.server`.
"""

from tests.mongo_standin.server import MongoStandIn

__all__ = ["MongoStandIn"]
