"""nbgrader settings of every user of the hub (students and instructors).

Install this folder where every single-user server reads it first: its path in
JUPYTER_CONFIG_PATH (deploy/tljh/jupyterhub_config.d/tp3.py, deploy/z2jh/values.yaml).
"""

c = get_config()  # noqa: F821 (provided by nbgrader)

# nbgrader's exchange: a folder every user can write to, made once by the administrator
# (deploy/tljh/setup.sh: mode 0777, as nbgrader's documentation says).
c.Exchange.root = "/srv/nbgrader/exchange"
