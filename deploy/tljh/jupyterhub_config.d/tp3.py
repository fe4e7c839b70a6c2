"""TP3's additions to The Littlest JupyterHub: copied by setup.sh to
/opt/tljh/config/jupyterhub_config.d/, which TLJH's JupyterHub loads after config.yaml."""

c = get_config()  # noqa: F821 (provided by JupyterHub)

c.Spawner.environment = {
    # deploy/jupyter, copied here by setup.sh: nbgrader's exchange and the Assignments tab,
    # read before the user environment's own settings (students' Validate on, instructor panels off)
    "JUPYTER_CONFIG_PATH": "/srv/tp3/jupyter",
    # data, tokenizer and GPT-2 weights, fetched once by setup.sh (python -m lab_utils prefetch),
    # read-only for users: nothing is downloaded in class
    "TP3_CACHE_DIR": "/srv/tp3/cache",
    "HF_HUB_OFFLINE": "1",
    # PyTorch starts one thread per core of the server; with limits.cpu = 1 they would only
    # fight over one core's time
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
