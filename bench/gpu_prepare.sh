#!/usr/bin/env bash
# Run on the CPU machine before a device call: what bench/gpu_checks.sh needs that the GPU image lacks.
# The device machine has torch, pandas, scikit-learn, matplotlib, tensorboard, but not MONAI, nibabel or
# nilearn, and it reaches no package registry; the CIFAR-10 JPEG copy lives in ../shared, which does not travel.
# Both go to git-ignored paths (data/ is ignored; .whl/ is added to .git/info/exclude) named in `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
# a worktree's .whl/ and data/ would not travel: a device call carries those of the checkout the session started in
[ -d .git ] || { echo "bench/gpu_prepare.sh: $PWD has no .git folder (a git worktree's .git is a file): run it in" \
    "the checkout the device calls send, whose .whl/ and data/ they carry" >&2; exit 1; }
# the CIFAR files first: a checkout not beside ../shared (a clone elsewhere) would get its wheels, then stop on cp
cifar=(../shared/data/cifar/cifar10-jpeg.tar.xz ../shared/data/cifar/CIFAR-10_human.npz)
for file in "${cifar[@]}"; do
    [ -f "$file" ] || { echo "bench/gpu_prepare.sh: $file missing beside $PWD: run it in the checkout beside" \
        "../shared, the one the device calls send" >&2; exit 1; }
done
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p data
# the wheels replace .whl/ once all are in: an earlier pin's wheel left beside this one's would stop gpu_checks.sh's
# install on the device, and a download that fails keeps the wheels there were
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$wheels" \
    "monai==1.6.1" "nibabel==5.4.2" "nilearn==0.14.1"
rm -rf .whl
mv "$wheels" .whl
cp -f "${cifar[@]}" data/
du -sh .whl data/cifar10-jpeg.tar.xz data/CIFAR-10_human.npz
# what to run next: the device calls planned at the top of gpu_checks.sh, read from there (its default mode, which
# this once printed, has its row measured; a call of it would spend most of a session's device time)
echo 'now the calls planned at the top of bench/gpu_checks.sh (cifar10n, not in it, carries data/*.npz too):'
sed -n 's/^#   \(run(\)/  \1/p; s/^#       \(timeout_s=\)/      \1/p' bench/gpu_checks.sh
