from django.urls import path

from runs import views

urlpatterns = [
    path("", views.home, name="home"),
    path("runs/<str:run_id>/", views.run_page, name="run"),
]
