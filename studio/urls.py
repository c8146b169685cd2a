from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # MLflow tracking API (api/2.0/mlflow/..., also under w/<workspace>/), before the other api/ routes.
    path("", include("runs.mlflow.urls")),
    path("api/", include(("runs.api.urls", "api"), namespace="api")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include(("runs.urls", "runs"), namespace="runs")),
]

# Names the limit a refused body or query string hit (413/400), in the caller's format.
handler400 = "studio.request_limits.bad_request"
