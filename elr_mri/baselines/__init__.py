"""The baselines a reviewer asks for first: linear models on regional volumes and on voxels."""
