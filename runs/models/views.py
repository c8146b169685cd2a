from __future__ import annotations

from django.conf import settings
from django.db import models


class SavedView(models.Model):
    """A named custom view of an experiment's runs: the query string that encodes it.

    The state is the same query string the browser's address bar holds, so a saved
    view and a copied URL open the same thing.
    """

    workspace = models.ForeignKey("runs.Workspace", on_delete=models.CASCADE, related_name="saved_views")
    experiment = models.ForeignKey("runs.Experiment", on_delete=models.CASCADE, related_name="saved_views")
    name = models.CharField(max_length=100)
    state = models.TextField(blank=True, default="", help_text="URL query string")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["experiment", "name"], name="savedview_unique_name")]

    def __str__(self) -> str:
        return self.name
