"""mmwrs: Weight Rescaling (WRS) and its comparison regularizers for OpenMMLab.

mmwrs is a plugin: it declares the ranges it works with, not a stack. torch (and
the mmcv built for it) are the user's: ``pip install mmwrs`` never replaces them.
The exact stacks CI builds and tests are in requirements/constraints/ and are used
only by tools/setup_env.sh. Keep these ranges in step with mmwrs/compat/versions.py
(SUPPORTED, checked on import) and the README's compatibility table.
"""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version():
    namespace = {}
    with open(osp.join(HERE, 'mmwrs', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_readme():
    path = osp.join(HERE, 'README.md')
    if not osp.exists(path):
        return ''
    with open(path, encoding='utf-8') as f:
        return f.read()


# What mmwrs imports at run time. No torch: mmwrs runs on the torch the user has
# (>= 2.0, checked with a clear message on import); a requirement here would make
# pip replace a CUDA build of torch with a multi-GB download and strand the
# compiled mmcv ops built against the old one.
INSTALL_REQUIRES = [
    'mmengine>=0.10.0,<1.0.0',  # 0.10.3 and 0.10.7 tested; mmdet/mmseg need <1.0
    'numpy',                    # numpy 1.26 and 2.x tested
]
# mmcv: the range mmdet 3.x and mmsegmentation 1.x accept (both assert <2.2.0).
MMCV = 'mmcv>=2.0.0rc4,<2.2.0'
EXTRAS_REQUIRE = {
    'det': ['mmdet>=3.0.0,<4.0.0', MMCV],
    # mmsegmentation 1.2's register_all_modules imports its multimodal tokenizer,
    # which needs ftfy and regex without declaring them.
    'seg': ['mmsegmentation>=1.0.0,<2.0.0', MMCV, 'ftfy', 'regex'],
    # The test suite: adamp is the reference SGDP/AdamP are checked against;
    # flake8 and isort at the revisions .pre-commit-config.yaml runs.
    'tests': ['pytest', 'adamp==0.3.0', 'tensorboard', 'flake8==7.5.0', 'isort==9.0.2'],
}

setup(
    name='mmwrs',
    version=read_version(),
    description='Weight Rescaling (WRS) and comparison regularizers for '
    'mmengine, mmdet and mmsegmentation',
    long_description=read_readme(),
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    license_files=['LICENSE'],
    classifiers=[
        'License :: OSI Approved :: Apache Software License',
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    # torch >= 2.0 supports Python 3.8 and later; 3.11 is tested.
    python_requires='>=3.8',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'configs.*', 'tools',
                                    'tools.*')),
    # The regularizer overlays, and the .mim/ layout mmengine resolves
    # `mmwrs::regularizers/<name>.py` in (.mim/configs links to configs/).
    package_data={'mmwrs': ['configs/regularizers/*.py', '.mim/model-index.yml',
                            '.mim/configs/regularizers/*.py']},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    zip_safe=False,
)
