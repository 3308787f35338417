from __future__ import annotations

from rest_framework import serializers

from mailsec.models import Organisation, TaskRun


class TaskRunSerializer(serializers.ModelSerializer[TaskRun]):
    organisation: serializers.SlugRelatedField[Organisation] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )

    class Meta:
        model = TaskRun
        fields = [
            "id",
            "kind",
            "organisation",
            "object_type",
            "object_id",
            "state",
            "created_at",
            "started_at",
            "finished_at",
            "attempts",
            "result",
            "error",
        ]
        read_only_fields = fields


class TaskAcceptedSerializer(serializers.Serializer[TaskRun]):
    """Body of every 202: where to poll for the outcome."""

    task_id = serializers.UUIDField(source="id")
    state = serializers.CharField()
    url = serializers.SerializerMethodField()

    def get_url(self, obj: TaskRun) -> str:
        return f"/api/v1/tasks/{obj.id}/"
