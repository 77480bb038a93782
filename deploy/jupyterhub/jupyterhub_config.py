"""JupyterHub for SIT471: one instructor, any number of students, nbgrader's exchange.

Run as root from the course's Python environment (the staff install of this repository):

    jupyterhub -f deploy/jupyterhub/jupyterhub_config.py

after `course_server.py setup` has written the server's state folder (roster, the role
configurations, the exchange). Settings come from environment variables:

    SIT471_HUB_STATE   the state folder (default /srv/sit471)
    SIT471_HUB_URL     the public address (default http://:8000, all interfaces)
    SIT471_HUB_API     the hub's internal address (default http://127.0.0.1:8081)
    SIT471_PROXY_API   configurable-http-proxy's API (default http://127.0.0.1:8001)
    SIT471_STUDENT_ENV the students' Python environment: the student wheel and JupyterHub,
                       no repository (default /opt/sit471/student-env)

Students' servers run from their own environment (SIT471_STUDENT_ENV: the student wheel, no
reference answers); the instructor's from the hub's (the staff install, with autograde).

Who is who: ``roster.json`` in the state folder (instructor, students). Each user is a real
Unix account; each single-user server runs as that user (LocalProcessSpawner), so nbgrader's
exchange works with its own Unix permissions (students write into ``inbound`` but cannot list
it; only the instructor reads submissions). Students' servers get ``STATE/student`` first on
their JUPYTER_CONFIG_PATH (instructor tools off, the student nbgrader settings); the
instructor's gets ``STATE/instructor`` (formgrader, create assignment, the course folder).

Log in: PAM, the accounts' own Unix passwords (a local authenticator, as the tests use). A
university server would replace the two marked lines: the authenticator by its single
sign-on (``ltiauthenticator`` for an LMS launch, or ``oauthenticator`` for OAuth/OIDC), and,
for more than a few dozen students, the spawner by one that gives each user a container
(DockerSpawner, KubeSpawner with Zero to JupyterHub) with the exchange on a shared volume.
"""

import json
import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

STATE = Path(os.environ.get("SIT471_HUB_STATE", "/srv/sit471"))
ROSTER = json.loads((STATE / "roster.json").read_text())
INSTRUCTOR = ROSTER["instructor"]
STUDENTS = set(ROSTER["students"])

c.JupyterHub.bind_url = os.environ.get("SIT471_HUB_URL", "http://:8000")
c.JupyterHub.hub_bind_url = os.environ.get("SIT471_HUB_API", "http://127.0.0.1:8081")
c.ConfigurableHTTPProxy.api_url = os.environ.get("SIT471_PROXY_API", "http://127.0.0.1:8001")
c.ConfigurableHTTPProxy.pid_file = str(STATE / "hub" / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{STATE / 'hub' / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "hub" / "cookie_secret")
c.JupyterHub.pid_file = str(STATE / "hub" / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every user's server

# Who may log in, and how (for a university: its single sign-on instead).
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.open_sessions = False
c.Authenticator.allowed_users = STUDENTS | {INSTRUCTOR}
c.Authenticator.admin_users = {INSTRUCTOR}

# One process per user, as that Unix user (for a large course: containers instead).
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.start_timeout = 120  # a 2-core server starting several JupyterLabs at once
c.Spawner.http_timeout = 120


STAFF_ENV = Path(sys.prefix)  # the hub's own: the repository's staff install
STUDENT_ENV = Path(os.environ.get("SIT471_STUDENT_ENV", "/opt/sit471/student-env"))


def role_environment(spawner) -> None:
    """Per role: the Python environment (students never run from the repository, which holds
    the reference answers and the hidden tests), the Jupyter configuration, PATH."""
    role = "instructor" if spawner.user.name == INSTRUCTOR else "student"
    prefix = STAFF_ENV if role == "instructor" else STUDENT_ENV
    spawner.cmd = [str(prefix / "bin" / "jupyterhub-singleuser")]
    spawner.environment["JUPYTER_CONFIG_PATH"] = str(STATE / role)
    spawner.environment["PATH"] = os.pathsep.join(
        [str(prefix / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])


c.Spawner.pre_spawn_hook = role_environment
