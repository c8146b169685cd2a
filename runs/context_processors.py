from runs.sdk import VERSION


def studio(request):
    return {"STUDIO_VERSION": VERSION}
