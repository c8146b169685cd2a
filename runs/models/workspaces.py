from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

WORKSPACE_NAME_RE = r"^[a-zA-Z0-9][a-zA-Z0-9_\-]{2,32}$"


class Workspace(models.Model):
    name = models.CharField(
        max_length=33,
        unique=True,
        validators=[RegexValidator(WORKSPACE_NAME_RE, "3-33 letters, digits, '-' or '_'")],
    )
    description = models.TextField(blank=True, default="")
    default_compute_target = models.CharField(max_length=64, default="local")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="workspaces")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        MEMBER = "member"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace} ({self.role})"
