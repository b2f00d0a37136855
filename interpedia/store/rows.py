"""The row types the layers above the store may name: handlers receive them from store functions and hand
them back (``User`` above all). Only their names cross: queries on them stay in the store."""

from interpedia.db.community import FeatureList
from interpedia.db.tables import ApiKey, Comment, Explanation, Feature, Model, Source, SourceSet, User

__all__ = ["ApiKey", "Comment", "Explanation", "Feature", "FeatureList", "Model", "Source", "SourceSet", "User"]
